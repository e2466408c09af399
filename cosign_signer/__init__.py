"""cosign_signer: sign container images and artifacts with the real cosign binary.

>>> from cosign_signer import Config, Signer                         # doctest: +SKIP
>>> signer = Signer(Config.from_file("config.yaml"))                  # doctest: +SKIP
>>> signer.sign_images(["registry.example/app:1.2"], key="prod")      # doctest: +SKIP
"""

from cosign_signer.command import CosignCapabilities, CosignCommand, CosignCommandBuilder
from cosign_signer.config import Config
from cosign_signer.errors import (
    BatchSignError,
    ConfigError,
    CosignError,
    CosignNotFoundError,
    CosignSignerError,
    CosignTimeoutError,
    ImageNotFoundError,
    InvalidReferenceError,
    RegistryAuthError,
    RegistryUnavailableError,
    SigningKeyError,
    TransparencyLogError,
    UnknownKeyAliasError,
)
from cosign_signer.keys import KeyAliasResolver, ResolvedKey
from cosign_signer.reference import ImageReference, parse_reference
from cosign_signer.signer import Signer, SignResult

__all__ = [
    "BatchSignError",
    "Config",
    "ConfigError",
    "CosignCapabilities",
    "CosignCommand",
    "CosignCommandBuilder",
    "CosignError",
    "CosignNotFoundError",
    "CosignSignerError",
    "CosignTimeoutError",
    "ImageNotFoundError",
    "ImageReference",
    "InvalidReferenceError",
    "KeyAliasResolver",
    "RegistryAuthError",
    "RegistryUnavailableError",
    "ResolvedKey",
    "SignResult",
    "Signer",
    "SigningKeyError",
    "TransparencyLogError",
    "UnknownKeyAliasError",
    "parse_reference",
]
__version__ = "0.1.0"
