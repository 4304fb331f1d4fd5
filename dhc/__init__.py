"""dhc: deep health checks for GPU training nodes.

Importing this package is cheap: it pulls in neither torch nor pytest nor any cloud client.
"""

__version__ = "0.1.0"
