"""elasticity: measure how language models resist alignment (Ji et al., ACL 2025)."""

__version__ = "0.1.0"
