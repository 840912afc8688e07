package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// evalValue evaluates expr in the page and decodes its JSON value.
func evalValue[T any](ctx context.Context, expr string) (T, error) {
	return evaluate[T](ctx, runtime.EvaluateParams{Expression: expr, ReturnByValue: ptr(true)})
}

// evalPromise is evalValue for an expression that yields a promise.
func evalPromise[T any](ctx context.Context, expr string) (T, error) {
	return evaluate[T](ctx, runtime.EvaluateParams{Expression: expr, ReturnByValue: ptr(true), AwaitPromise: ptr(true)})
}

func evaluate[T any](ctx context.Context, p runtime.EvaluateParams) (T, error) {
	var v T
	res, err := chromedp.Call(ctx, runtime.Evaluate, p)
	if err != nil {
		return v, err
	}
	if res.ExceptionDetails != nil {
		return v, errors.New(exceptionText(res.ExceptionDetails))
	}
	if res.Result == nil || len(res.Result.Value) == 0 {
		return v, errors.New("the page returned no value")
	}
	err = json.Unmarshal(res.Result.Value, &v)
	return v, err
}

// userError is a failure that the caller can fix, with a message for them.
type userError struct{ msg string }

func (e userError) Error() string { return e.msg }

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil && d.Exception.Description != "" {
		first, _, _ := strings.Cut(d.Exception.Description, "\n    at ")
		return strings.TrimPrefix(first, "Error: ")
	}
	return fmt.Sprintf("%s (line %d)", d.Text, d.LineNumber)
}

// evaluateFunction calls fn in the page with the elements of uids as its
// arguments, awaiting a promise and returning the value as JSON.
func evaluateFunction(ctx context.Context, tab *Tab, fn string, uids []string) (*runtime.EvaluateResult, error) {
	if len(uids) == 0 {
		p := runtime.EvaluateParams{Expression: "(" + fn + "\n)()", AwaitPromise: ptr(true), ReturnByValue: ptr(true)}
		if tab.Send != nil {
			return sendEvaluate(ctx, tab, p)
		}
		res, err := chromedp.Call(ctx, runtime.Evaluate, p)
		return &res, err
	}
	elems := make([]*element, 0, len(uids))
	for _, uid := range uids {
		e, err := elementOf(ctx, tab, uid)
		if err != nil {
			return nil, userError{err.Error()}
		}
		// A function runs in one frame, so its arguments must all be there.
		if len(elems) > 0 && e.ref.frame != elems[0].ref.frame {
			return nil, userError{fmt.Sprintf("uid %s and uid %s are in different frames (one is in a cross-site iframe), and a function runs in one; pass elements of one frame", bareUID(uids[0]), bareUID(uid))}
		}
		elems = append(elems, e)
	}
	// The function runs in the frame of its arguments.
	sess := elems[0].ctx
	args := make([]*runtime.CallArgument, 0, len(uids))
	for _, e := range elems {
		obj, err := chromedp.Call(sess, dom.ResolveNode, dom.ResolveNodeParams{BackendNodeID: e.ref.id})
		if err != nil {
			return nil, err
		}
		defer func() {
			_, _ = chromedp.Call(sess, runtime.ReleaseObject, runtime.ReleaseObjectParams{ObjectID: obj.Object.ObjectID})
		}()
		args = append(args, &runtime.CallArgument{ObjectID: obj.Object.ObjectID})
	}
	res, err := chromedp.Call(sess, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
		FunctionDeclaration: fn, ObjectID: args[0].ObjectID, Arguments: args,
		AwaitPromise: ptr(true), ReturnByValue: ptr(true),
	})
	if err != nil {
		return nil, err
	}
	return &runtime.EvaluateResult{Result: res.Result, ExceptionDetails: res.ExceptionDetails}, nil
}

// sendEvaluate is Runtime.evaluate on the tab's session beside chromedp
// (Tab.Send): one write and one read of the connection, without chromedp's
// per-command goroutine hand-offs.
func sendEvaluate(ctx context.Context, tab *Tab, p runtime.EvaluateParams) (*runtime.EvaluateResult, error) {
	wait, err := tab.Send(ctx, runtime.CommandEvaluate, p)
	if err != nil {
		if ctx.Err() != nil {
			// The call's time ran out while the write waited: cdpError
			// says the browser did not answer.
			return nil, err
		}
		// The write failed: the connection is going, and chromedp, which
		// reads it, may not have noticed yet.
		return nil, fmt.Errorf("%w: %v", errConnLost, err)
	}
	raw, err := wait()
	if err != nil {
		return nil, err
	}
	var res runtime.EvaluateResult
	if err := jsonv2.Unmarshal(raw, &res, chromedp.DefaultUnmarshalOptions); err != nil {
		return nil, err
	}
	return &res, nil
}
