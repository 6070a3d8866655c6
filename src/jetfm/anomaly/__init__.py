"""jetfm.anomaly"""
