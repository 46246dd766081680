# The two promised commands: `make scan` (a real scan of the bundled samples) and `make test`.
.PHONY: setup scan test test-fast lint bench

setup:
	@bash scripts/setup.sh

scan: setup
	.venv/bin/tamperscan scan samples/images --out scan-results/ --heatmaps

test:
	@TAMPERSCAN_SETUP_BROWSER=1 bash scripts/setup.sh
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q

# No Ray cluster, no S3 server, no browser: the tests not marked `slow`.
test-fast: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q -m "not slow"

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python benchmarks/nets.py
