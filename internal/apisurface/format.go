package apisurface

import (
	"go/types"
	"sort"
	"strconv"
	"strings"
)

// typeWriter prints types for comparison. Parameter and result names are
// left out everywhere, also inside nested func types (a field of type
// func(ctx context.Context, f func()) prints as func(context.Context, func())):
// they are not part of a type's identity, and the reference itself names the
// same parameter differently in an interface and in its implementations.
// Aliases are resolved, so *LinkBuffer and *UnsafeLinkBuffer print alike.
// Types of the package being listed are unqualified; all others carry their
// full import path.
//
// With names set, signatures keep their parameter and result names: that
// form is for reading (apisurface -names), never for the gate.
//
// Every unexported type of the local package that it prints is recorded in
// reached: such a type is part of the surface even though it has no name
// outside (its exported fields and methods can be used).
type typeWriter struct {
	local   *types.Package
	names   bool
	reached map[*types.TypeName]bool
}

func (w typeWriter) qualify(pkg *types.Package) string {
	if pkg == nil || pkg == w.local {
		return ""
	}
	return pkg.Path()
}

func (w typeWriter) typ(t types.Type) string {
	var b strings.Builder
	w.write(&b, t)
	return b.String()
}

func (w typeWriter) write(b *strings.Builder, t types.Type) {
	t = unalias(t)
	switch t := t.(type) {
	case *types.Basic:
		b.WriteString(t.Name())
	case *types.Named:
		w.writeNamed(b, t)
	case *types.Pointer:
		b.WriteByte('*')
		w.write(b, t.Elem())
	case *types.Slice:
		b.WriteString("[]")
		w.write(b, t.Elem())
	case *types.Array:
		b.WriteString("[" + strconv.FormatInt(t.Len(), 10) + "]")
		w.write(b, t.Elem())
	case *types.Map:
		b.WriteString("map[")
		w.write(b, t.Key())
		b.WriteByte(']')
		w.write(b, t.Elem())
	case *types.Chan:
		switch t.Dir() {
		case types.SendRecv:
			b.WriteString("chan ")
		case types.SendOnly:
			b.WriteString("chan<- ")
		case types.RecvOnly:
			b.WriteString("<-chan ")
		}
		w.write(b, t.Elem())
	case *types.Signature:
		b.WriteString("func")
		w.writeSignature(b, t)
	case *types.Struct:
		w.writeStruct(b, t)
	case *types.Interface:
		w.writeInterface(b, t)
	case *types.TypeParam:
		b.WriteString(t.Obj().Name())
	default:
		b.WriteString(types.TypeString(t, w.qualify))
	}
}

func (w typeWriter) writeNamed(b *strings.Builder, t *types.Named) {
	obj := t.Obj()
	if w.reached != nil && obj.Pkg() == w.local && !obj.Exported() {
		w.reached[obj] = true
	}
	if q := w.qualify(obj.Pkg()); q != "" {
		b.WriteString(q + ".")
	}
	b.WriteString(obj.Name())
	if args := t.TypeArgs(); args != nil && args.Len() > 0 {
		b.WriteByte('[')
		for i := 0; i < args.Len(); i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			w.write(b, args.At(i))
		}
		b.WriteByte(']')
	}
}

// writeSignature prints "(params) results", without names unless w.names;
// a method's receiver is not printed.
func (w typeWriter) writeSignature(b *strings.Builder, sig *types.Signature) {
	b.WriteByte('(')
	w.writeTuple(b, sig.Params(), sig.Variadic())
	b.WriteByte(')')
	results := sig.Results()
	switch {
	case results.Len() == 0:
	case results.Len() == 1 && (!w.names || results.At(0).Name() == ""):
		b.WriteByte(' ')
		w.write(b, results.At(0).Type())
	default:
		b.WriteString(" (")
		w.writeTuple(b, results, false)
		b.WriteByte(')')
	}
}

func (w typeWriter) writeTuple(b *strings.Builder, tuple *types.Tuple, variadic bool) {
	for i := 0; i < tuple.Len(); i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		v := tuple.At(i)
		if w.names && v.Name() != "" {
			b.WriteString(v.Name() + " ")
		}
		t := v.Type()
		if variadic && i == tuple.Len()-1 {
			b.WriteString("...")
			t = t.(*types.Slice).Elem()
		}
		w.write(b, t)
	}
}

// writeStruct prints an anonymous struct type with all its fields, exported
// or not, in declaration order: they all belong to the type's identity.
func (w typeWriter) writeStruct(b *strings.Builder, s *types.Struct) {
	b.WriteString("struct{")
	for i := 0; i < s.NumFields(); i++ {
		if i > 0 {
			b.WriteString("; ")
		}
		f := s.Field(i)
		if !f.Embedded() {
			b.WriteString(f.Name() + " ")
		}
		w.write(b, f.Type())
		if tag := s.Tag(i); tag != "" {
			b.WriteString(" " + strconv.Quote(tag))
		}
	}
	b.WriteByte('}')
}

// writeInterface prints an anonymous interface: embedded types, then the
// explicit methods sorted by name.
func (w typeWriter) writeInterface(b *strings.Builder, it *types.Interface) {
	var parts []string
	for i := 0; i < it.NumEmbeddeds(); i++ {
		parts = append(parts, w.typ(it.EmbeddedType(i)))
	}
	var methods []string
	for i := 0; i < it.NumExplicitMethods(); i++ {
		m := it.ExplicitMethod(i)
		var mb strings.Builder
		mb.WriteString(m.Name())
		w.writeSignature(&mb, m.Type().(*types.Signature))
		methods = append(methods, mb.String())
	}
	sort.Strings(methods)
	parts = append(parts, methods...)
	b.WriteString("interface{" + strings.Join(parts, "; ") + "}")
}

// typeParams prints a generic declaration's type parameter list, or "".
func (w typeWriter) typeParams(list *types.TypeParamList) string {
	if list == nil || list.Len() == 0 {
		return ""
	}
	parts := make([]string, list.Len())
	for i := 0; i < list.Len(); i++ {
		tp := list.At(i)
		parts[i] = tp.Obj().Name() + " " + w.typ(tp.Constraint())
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
