"""The link lifecycle: the stored tokens, their refresh, rotation, revocation and claims."""
