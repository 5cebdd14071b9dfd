"""Prints the size of the Lambda function as deployed: the bootstrap binary, and the zip
`sam deploy` uploads (deflate, as SAM packages it)."""

import io
import sys
import zipfile
from pathlib import Path

binary = Path(sys.argv[1])
archive = io.BytesIO()
with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as package:
    package.write(binary, "bootstrap")
size, zipped = binary.stat().st_size, archive.getbuffer().nbytes
print(f"function package: bootstrap {size:,} bytes ({size / 2**20:.1f} MiB), zipped {zipped:,} bytes ({zipped / 2**20:.1f} MiB)")
