"""One package per paper: srnn, l2l, transducer, bptt, compression, shapes3d. Each __init__ holds SPEC only."""
