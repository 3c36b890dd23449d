"""Set-level evaluation (FID/KID/CMMD/LPIPS diversity) and the reference statistics store."""
