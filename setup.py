"""The one compiled part: capture's VoSPI CRC check (everything else is in setup.cfg).

optional=True: where no C compiler or Python headers are (Debian: python3-dev), the build goes on
without it and capture checks CRCs with its numpy table instead (it logs which it uses).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("capture._vospi_crc", ["capture/_vospi_crc.c"], optional=True)])
