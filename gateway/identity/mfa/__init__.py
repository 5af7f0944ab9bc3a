"""Second factors of local accounts: TOTP, one-time recovery codes, passkeys, and the second sign-in step.

``factors`` says what a user has enrolled and who must enrol (``MFA_REQUIRED``),
and resets it all (``admin.mfa_reset``, through ``accounts.revoke_access``);
``totp``, ``recovery`` and ``passkeys`` keep each factor; ``step`` is the
second step after the password (counted toward the sign-in lock); ``gate`` is
what the one sign-in gate (``gateway.identity.require_login``) asks about a
half-signed-in session or a user who must enrol first. Nothing is imported
here, so ``identity.service`` can use ``factors`` without a circle. May import
``platform``, ``db``, ``audit`` and the rest of ``identity``.
"""
