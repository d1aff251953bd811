//! pam_kpanel: forwards the PAM conversation to kauthd.
