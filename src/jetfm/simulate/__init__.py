"""jetfm.simulate"""
