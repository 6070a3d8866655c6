"""jetfm.evaluate"""
