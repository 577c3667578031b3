"""Prints its argv as JSON, one line, from rank 0 (or every rank with ALL=1)."""
import json
import os
import sys

if os.environ.get("RANK", "0") == "0" or os.environ.get("ALL") == "1":
    print("ARGV " + json.dumps(sys.argv[1:]), flush=True)
    print("CWD " + os.getcwd(), flush=True)
