package proxy

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
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
)

// CodeBrowserUnavailable is the code of an answer that needed the user's
// browser while it was down or did not answer.
const CodeBrowserUnavailable = "BROWSER_UNAVAILABLE"

// APIError is the JSON body of every error answer.
type APIError struct {
	Status     int    `json:"-"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	RetryAfter int    `json:"-"` // seconds, for LIMIT_EXCEEDED
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
