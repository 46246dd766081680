"""Train the default weights (same arguments as `tamperscan train`):

    python jobs/train.py two_stream --steps 2000 --out runs/two_stream
"""

import sys

from tamperscan.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]])
