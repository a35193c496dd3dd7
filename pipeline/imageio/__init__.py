"""ImageIO: the objects of a tile as FoF groups of multi-band, multi-epoch
observations (:mod:`pipeline.imageio.base`), read from MEDS files
(:mod:`pipeline.imageio.meds_io`)."""
