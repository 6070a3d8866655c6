"""jetfm.build"""
