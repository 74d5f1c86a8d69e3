package render

// OnRendered registers fn to be called by Run after each render, with the
// data rendered and the report (the operator persists it for `roster ps`).
// Call it before Run.
func (r *Renderer) OnRendered(fn func(Data, Report)) { r.rendered = fn }
