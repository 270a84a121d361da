"""Deletion requests against a model trained and deployed outside miunlearn (``miunlearn forget``)."""

from miunlearn.deployed.config import DeploymentConfig, HeldOutConfig
from miunlearn.deployed.forget import ForgetResult, forget

__all__ = ["DeploymentConfig", "ForgetResult", "HeldOutConfig", "forget"]
