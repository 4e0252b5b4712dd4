"""``python -m norm_nerf.analysis {ntk,freq} <flags>``: the spectral-bias analyses, as ``norm-inr ntk|freq``."""

from norm_nerf.analysis.run import main

if __name__ == "__main__":
    main()
