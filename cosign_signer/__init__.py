"""cosign_signer: sign container images and artifacts with the real cosign binary.

>>> from cosign_signer import Config, Signer                         # doctest: +SKIP
>>> signer = Signer(Config.from_file("config.yaml"))                  # doctest: +SKIP
>>> signer.sign_images(["registry.example/app:1.2"], key="prod")      # doctest: +SKIP
"""

from cosign_signer.blob import BlobSignResult
from cosign_signer.command import CosignCapabilities, CosignCommand, CosignCommandBuilder
from cosign_signer.config import Config
from cosign_signer.errors import (
    ArtifactNotFoundError,
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
    VerificationError,
)
from cosign_signer.keys import KeyAliasResolver, ResolvedKey
from cosign_signer.plan import PlannedCommand
from cosign_signer.reference import ImageReference, parse_reference
from cosign_signer.signer import Signer, SignResult
from cosign_signer.verify import VerifyResult

__all__ = [
    "ArtifactNotFoundError",
    "BatchSignError",
    "BlobSignResult",
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
    "PlannedCommand",
    "RegistryAuthError",
    "RegistryUnavailableError",
    "ResolvedKey",
    "SignResult",
    "Signer",
    "SigningKeyError",
    "TransparencyLogError",
    "UnknownKeyAliasError",
    "VerificationError",
    "VerifyResult",
    "parse_reference",
]
__version__ = "0.1.0"
