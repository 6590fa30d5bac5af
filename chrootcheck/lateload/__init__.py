"""The files OpenSSL loads late (config, engines, providers, PKCS#11 modules), checked against a
jail.
"""
