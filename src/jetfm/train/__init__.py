"""jetfm.train"""
