"""Dev-only code (local gateway, local stack, deploy helpers). Never shipped to Lambda."""
