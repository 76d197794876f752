"""What this machine and process are: the GPU and its capability, optional packages, the distributed rank.

Owns nothing. Every other layer may import it.

May import: nothing.
"""
