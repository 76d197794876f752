"""What this machine and process are: the GPU and its capability, optional packages, the distributed rank.

Owns nothing; imports nothing from kft. Every other layer may import it.
"""
