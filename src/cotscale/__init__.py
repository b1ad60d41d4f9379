"""cotscale: when does spending inference tokens beat training a bigger model?"""

__version__ = "0.1.0"
