"""deeplimit.report"""
