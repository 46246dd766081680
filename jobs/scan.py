"""Ray job entry point for the bulk scan (same arguments as `tamperscan scan`):

    ray job submit --working-dir . -- python jobs/scan.py s3://bucket/prefix --out s3://bucket/out
"""

import sys

from tamperscan.cli import app

if __name__ == "__main__":
    app(["scan", *sys.argv[1:]])
