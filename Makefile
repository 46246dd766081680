# The two promised commands: `make scan` (a real scan of the bundled samples) and `make test`.
.PHONY: setup scan test lint bench

setup:
	@bash scripts/setup.sh

scan: setup
	.venv/bin/tamperscan scan samples/images --out scan-results/ --heatmaps

test:
	@TAMPERSCAN_SETUP_BROWSER=1 bash scripts/setup.sh
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python benchmarks/nets.py
