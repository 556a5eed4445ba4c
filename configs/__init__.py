"""Ready configs, shipped in the package so `coe ask` finds the embedded default after any install."""
