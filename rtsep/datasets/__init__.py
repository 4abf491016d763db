"""Data sets rtsep can make here (toy4, music4) and the loader for a user's DIR/<source>/*.wav."""
