"""Figure makers: the README's pictures, drawn from bundled checkpoints, result tables or a JSON file. With
``--quick`` they write into a temporary folder, never over the repository's pictures."""
