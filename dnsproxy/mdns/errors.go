package mdns

import "errors"

var (
	// ErrInvalidConfig means a Config field has a value New cannot use; the
	// error names the field.
	ErrInvalidConfig = errors.New("invalid mdns config")
	// ErrAlreadyRun means Run was called a second time on the same Responder.
	ErrAlreadyRun = errors.New("mdns responder already run")
)
