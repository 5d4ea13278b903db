# router.pxi
