// Placeholder: the proxy's own sign-in (OAuth) replaces this file. It may
// put a button in #signin-oauth, store a token in sessionStorage under
// "mbp.token", then call window.mbpSignedIn().
