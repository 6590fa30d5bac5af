"""Find OpenSSL error chains in logs and explain them."""
