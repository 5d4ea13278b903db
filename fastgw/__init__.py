"""fastgw: a strict, fast API gateway for HTTP services.

Run it with `fastgw run -c gateway.yaml`, or embed it::

    from fastgw import Gateway
    async with Gateway.from_file("gateway.yaml") as gw:
        ...
"""

from fastgw._version import __version__
from fastgw.config import Config, load_config, parse_config
from fastgw.errors import ConfigError, ConfigErrors, FastgwError, GatewayError
from fastgw.policy import Policy, PolicyConfig, Response
from fastgw.runtime.gateway import Gateway

__all__ = [
    "Config",
    "ConfigError",
    "ConfigErrors",
    "FastgwError",
    "Gateway",
    "GatewayError",
    "Policy",
    "PolicyConfig",
    "Response",
    "__version__",
    "load_config",
    "parse_config",
]
