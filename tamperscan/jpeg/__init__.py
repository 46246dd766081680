"""JPEG-domain evidence: double-compression localisation from quantisation tables and DCT
coefficients (Bianchi & Piva, IEEE TIFS 2012), read with libjpeg through ``jpeglib``.

Modules, one job each: `read` (coefficients and tables from the bytes), `tables` (IJG table
fingerprint, quality estimates), `dct` (vectorised block DCT/IDCT), `lattice` (the
double-quantisation likelihood model per block), `aligned` and `nonaligned` (it on the stored
grid, and on a first grid found at another offset), `evidence` (region, image score, analyst
columns), `geometry` (block grid -> the upright, resized image)."""

from tamperscan.jpeg.evidence import RULE, JpegFindings, Rule, jpeg_findings
from tamperscan.jpeg.geometry import upright_map

__all__ = ["RULE", "JpegFindings", "Rule", "jpeg_findings", "upright_map"]
