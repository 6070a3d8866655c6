"""jetfm.pipelines"""
