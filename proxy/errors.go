package proxy

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// Error codes of the JSON error answers.
const (
	CodeInvalidRequest    = "INVALID_REQUEST"
	CodeInvalidUserID     = "INVALID_USER_ID"
	CodeInvalidBrowserURL = "INVALID_BROWSER_URL"
	CodeUnauthorized      = "UNAUTHORIZED"
	CodeForbidden         = "FORBIDDEN"
	CodeNotFound          = "NOT_FOUND"
	CodeConflict          = "CONFLICT"
	CodeLimitExceeded     = "LIMIT_EXCEEDED"
	CodeInternal          = "INTERNAL"
	// CodeStoreUnavailable: the shared store (Redis) did not answer; the
	// request may be retried (503 with Retry-After).
	CodeStoreUnavailable = "STORE_UNAVAILABLE"
)

// CodeBrowserUnavailable is the code of an answer that needed the user's
// browser while it was down or did not answer.
const CodeBrowserUnavailable = "BROWSER_UNAVAILABLE"

// storeRetryAfter is the Retry-After, in seconds, of STORE_UNAVAILABLE.
const storeRetryAfter = 5

// storeUnavailable is the answer to a request that needed the store while
// it was unreachable: the client retries, the operator checks Redis.
func storeUnavailable() *APIError {
	return &APIError{Status: http.StatusServiceUnavailable, Code: CodeStoreUnavailable, RetryAfter: storeRetryAfter,
		Message: "the registration store (Redis) is unreachable, so the request could not be served; retry in a few seconds; if this persists, the operator should check that the Redis of --redis-url is up (GET /ready says 503 meanwhile)"}
}

// APIError is the JSON body of every error answer.
type APIError struct {
	Status     int    `json:"-"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	RetryAfter int    `json:"-"` // seconds, for LIMIT_EXCEEDED and STORE_UNAVAILABLE
	bearer     string // RFC 6750 error code of a 401's WWW-Authenticate (a token was sent but refused)
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

func apiError(status int, code, msg string) *APIError {
	return &APIError{Status: status, Code: code, Message: msg}
}

// errorHandler writes every error as {code, message}.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ae *APIError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			ae = apiError(he.Code, CodeNotFound, "no such route; see README.md for the API")
		case http.StatusMethodNotAllowed:
			ae = apiError(he.Code, CodeInvalidRequest, "method not allowed on this route")
		case http.StatusRequestEntityTooLarge:
			ae = apiError(he.Code, CodeInvalidRequest, "request body too large; the limit is "+s.cfg.MaxBody)
		case http.StatusUnauthorized:
			ae = apiError(he.Code, CodeUnauthorized, "missing or invalid bearer token")
		default:
			if he.Code >= 500 {
				ae = apiError(he.Code, CodeInternal, "internal error; see the proxy log")
			} else {
				ae = apiError(he.Code, CodeInvalidRequest, http.StatusText(he.Code))
			}
		}
	case errors.Is(err, router.ErrUnavailable):
		// The error names at most Redis's host:port, never a credential.
		s.log.Warn().Err(err).Str("request_id", requestID(c)).Msg("store unreachable")
		ae = storeUnavailable()
	default:
		s.log.Error().Err(err).Str("request_id", requestID(c)).Msg("unhandled error")
		ae = apiError(http.StatusInternalServerError, CodeInternal, "internal error; see the proxy log")
	}
	if ae.Status == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", s.challenge(ae.bearer))
	}
	if ae.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(ae.Status)
		return
	}
	_ = c.JSON(ae.Status, ae)
}

// tooLarge says whether err is the body limit's: a chunked body over
// --max-body fails its read with it (a body with a length over the limit
// is refused before the handler), and it must stay a 413 rather than
// become the handler's 400 for a body that is not JSON.
func tooLarge(err error) bool {
	return errors.Is(err, echo.ErrStatusRequestEntityTooLarge)
}
