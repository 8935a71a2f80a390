"""Write the SRNN tab's bundled real music: the first test pieces of each benchmark (--sets).

    .venv/bin/python scripts/srnn_demo_pieces.py --data ../shared/data/music

The pieces are the first DEMO_PIECES of the authors' test split (the same split the checkpoints' test ELBO is
measured on), stored bit-packed in resources/srnn/<set>_test_pieces.npz with the data's MIT licence beside them.
"""

import argparse
import shutil
from pathlib import Path

from explorer.core.paths import resources_dir
from explorer.papers.srnn import data as D

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", required=True, help="folder with the SRNN authors' npz files")
p.add_argument("--sets", default="jsb,nottingham")
args = p.parse_args()
for name in args.sets.split(","):
    md = D.load(args.data, name)
    out = D.write_demo_pieces(md, D.demo_pieces_path(name))
    print(f"{out}: {out.stat().st_size} bytes, {min(D.DEMO_PIECES, len(md.x_test))} pieces of {md.title}")
lic = Path(args.data) / "LICENSE.srnn-authors"
if lic.exists():
    shutil.copyfile(lic, resources_dir() / "srnn" / "LICENSE.srnn-authors")  # not its read-only mode
