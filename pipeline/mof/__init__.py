"""Multi-object fitting: neighbour rendering, convergence, joint fits, corrected MEDS."""
