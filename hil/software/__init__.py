"""What software a hub and a candidate carry (SBOMs) and whether it is outdated (advisories)."""
