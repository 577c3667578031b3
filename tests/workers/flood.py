"""Floods stdout as fast as it can: FLOOD_LINES lines ``<rank> <i> xxx...`` (FLOOD_WIDTH
x's), written 256 lines at a time, then an empty file FLOOD_DONE/<rank> once all of
them are written (its absence while a reader stalls proves the rank was held back)."""
import os
import sys

rank = os.environ.get("RANK", "0")
count = int(os.environ["FLOOD_LINES"])
pad = "x" * int(os.environ.get("FLOOD_WIDTH", "80"))
out = sys.stdout
for start in range(0, count, 256):
    out.write("".join(f"{rank} {i} {pad}\n" for i in range(start, min(start + 256, count))))
out.flush()
open(os.path.join(os.environ["FLOOD_DONE"], rank), "w").close()
