"""Data sets pairing truth and measurements: HDF5 files, LoDoPaB-CT's files, simulation, and readers for users'
images."""

from learnrecon.data.hdf5 import ReconstructionDataset, Sample, load
from learnrecon.data.lodopab import LoDoPaBFiles, lodopab_operator
from learnrecon.data.readers import read_images
from learnrecon.data.simulate import NoiseSpec, make_phantoms, parse_noise, simulate

__all__ = [
    "LoDoPaBFiles",
    "NoiseSpec",
    "ReconstructionDataset",
    "Sample",
    "load",
    "lodopab_operator",
    "make_phantoms",
    "parse_noise",
    "read_images",
    "simulate",
]
