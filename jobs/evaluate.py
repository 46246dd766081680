"""Evaluate on a dataset folder (same arguments as `tamperscan evaluate`):

    python jobs/evaluate.py ../shared/data/eval/casia2_samples --out reports/casia2.json
"""

import sys

from tamperscan.cli import app

if __name__ == "__main__":
    app(["evaluate", *sys.argv[1:]])
