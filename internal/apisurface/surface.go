package apisurface

import (
	"fmt"
	"go/types"
	"sort"
	"strings"
)

// Surface is the exported surface of one package: one line per identifier,
// field or method, in a stable order (package-level names sorted, each type
// followed by its fields, embedded interfaces and methods).
//
// Line forms:
//
//	const Name T = value
//	var Name T
//	func Name(params) results
//	type Name = T                       (alias)
//	type Name struct                    (", has unexported fields" when it has any;
//	                                     ", not comparable" when == does not apply)
//	type Name interface                 (", has unexported methods" when it has any)
//	type Name T                         (any other defined type: T is its underlying type;
//	                                     an array type can be ", not comparable")
//	type name ..., unexported           (an unexported type that other lines mention,
//	                                     followed by its exported fields and methods)
//	field Type.Name T                   (" (embedded)"; " (promoted via A.B)" when it
//	                                     comes through an exported embedded field)
//	embed Iface T                       (a type embedded in interface Iface)
//	imethod Iface.Name(params) results  (the whole method set, embedded methods included)
//	method (*Type) Name(params) results (receiver (Type) when the value's method set has it;
//	                                     " (promoted via A.B)" when it comes through an
//	                                     exported embedded field)
//
// Signatures carry no parameter or result names (see typeWriter).
type Surface struct {
	Path   string
	Target Target
	Lines  []string
	Counts Counts
}

// Counts are the figures docs/contract.md C0.7 gives for a surface. As there, a
// type's methods and fields include those promoted through unexported
// embedded fields but not those promoted through exported ones, and an
// interface's methods are its explicit ones.
type Counts struct {
	Consts, Vars, Funcs, Types int
	Methods                    map[string]int // declared methods per type
	InterfaceMethods           map[string]int // explicit methods per interface
	Fields                     map[string]int // exported fields declared in each struct
	PromotedMethods            int
	EmbeddedInterfaceMethods   int
	PromotedFields             int
	Unexported                 int // unexported types the surface mentions
}

func (c Counts) clone() Counts {
	c.Methods = cloneMap(c.Methods)
	c.InterfaceMethods = cloneMap(c.InterfaceMethods)
	c.Fields = cloneMap(c.Fields)
	return c
}

func cloneMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// PackageLevel is the number of exported package-level identifiers.
func (c Counts) PackageLevel() int { return c.Consts + c.Vars + c.Funcs + c.Types }

// Total is the total of docs/contract.md C0.7: package level, declared methods, explicit
// interface methods and declared fields.
func (c Counts) Total() int {
	return c.PackageLevel() + sum(c.Methods) + sum(c.InterfaceMethods) + sum(c.Fields)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Enumerate lists the exported surface of pkg.
func Enumerate(pkg *types.Package, target Target) *Surface {
	return enumerate(pkg, target, false)
}

// EnumerateWithNames is Enumerate with parameter and result names kept in
// signatures, for reading. Names are no part of a type's identity, and the
// reference names one parameter differently in an interface and in its
// implementations, so the gate compares Enumerate's lines.
func EnumerateWithNames(pkg *types.Package, target Target) *Surface {
	return enumerate(pkg, target, true)
}

func enumerate(pkg *types.Package, target Target, names bool) *Surface {
	e := &enumerator{
		w: typeWriter{local: pkg, names: names, reached: map[*types.TypeName]bool{}},
		s: &Surface{Path: pkg.Path(), Target: target, Counts: Counts{
			Methods: map[string]int{}, InterfaceMethods: map[string]int{}, Fields: map[string]int{},
		}},
	}
	scope := pkg.Scope()
	for _, name := range scope.Names() { // sorted
		obj := scope.Lookup(name)
		if !obj.Exported() {
			continue
		}
		e.object(obj)
	}
	e.reachable()
	return e.s
}

// reachable lists the unexported types that the lines so far mention (such
// as *epollevent in EpollCtl's signature), and in turn those their lines
// mention, marking each type line ", unexported". They do not enter the
// spec's counts; Counts.Unexported counts them.
func (e *enumerator) reachable() {
	counts := e.s.Counts.clone()
	done := map[*types.TypeName]bool{}
	for {
		var next []*types.TypeName
		for obj := range e.w.reached {
			if !done[obj] {
				next = append(next, obj)
			}
		}
		if len(next) == 0 {
			break
		}
		sort.Slice(next, func(i, j int) bool { return next[i].Name() < next[j].Name() })
		for _, obj := range next {
			done[obj] = true
			counts.Unexported++
			start := len(e.s.Lines)
			e.typeName(obj)
			e.s.Lines[start] += ", unexported"
		}
	}
	e.s.Counts = counts
}

type enumerator struct {
	w typeWriter
	s *Surface
}

func (e *enumerator) add(format string, args ...interface{}) {
	e.s.Lines = append(e.s.Lines, fmt.Sprintf(format, args...))
}

func (e *enumerator) object(obj types.Object) {
	switch obj := obj.(type) {
	case *types.Const:
		e.s.Counts.Consts++
		e.add("const %s %s = %s", obj.Name(), e.w.typ(obj.Type()), obj.Val().ExactString())
	case *types.Var:
		e.s.Counts.Vars++
		e.add("var %s %s", obj.Name(), e.w.typ(obj.Type()))
	case *types.Func:
		e.s.Counts.Funcs++
		sig := obj.Type().(*types.Signature)
		var b strings.Builder
		e.w.writeSignature(&b, sig)
		e.add("func %s%s%s", obj.Name(), e.w.typeParams(sig.TypeParams()), b.String())
	case *types.TypeName:
		e.s.Counts.Types++
		e.typeName(obj)
	default:
		e.add("unknown %s %T", obj.Name(), obj)
	}
}

func (e *enumerator) typeName(obj *types.TypeName) {
	name := obj.Name()
	if obj.IsAlias() {
		// The target's own lines (methods, fields) are listed under its name.
		e.add("type %s = %s", name, e.w.typ(obj.Type()))
		return
	}
	named, ok := obj.Type().(*types.Named)
	if !ok {
		e.add("type %s %s", name, e.w.typ(obj.Type()))
		return
	}
	decl := name + e.w.typeParams(named.TypeParams())
	switch u := named.Underlying().(type) {
	case *types.Interface:
		e.add("type %s interface%s", decl, hiddenMethods(u))
		e.interfaceMethods(name, u)
		return
	case *types.Struct:
		e.add("type %s struct%s%s", decl, hiddenFields(u), notComparable(named))
		e.fields(name, named, u)
	case *types.Array:
		e.add("type %s %s%s", decl, e.w.typ(u), notComparable(named))
	default:
		e.add("type %s %s", decl, e.w.typ(u))
	}
	e.methods(name, named)
}

// notComparable marks a struct or array type whose values cannot be compared
// with == (or used as map keys). Whether a struct is comparable depends on
// its unexported fields too, so it would not show in the field lines.
func notComparable(t types.Type) string {
	if types.Comparable(t) {
		return ""
	}
	return ", not comparable"
}

func hiddenFields(s *types.Struct) string {
	for i := 0; i < s.NumFields(); i++ {
		if !s.Field(i).Exported() {
			return ", has unexported fields"
		}
	}
	return ""
}

func hiddenMethods(it *types.Interface) string {
	for i := 0; i < it.NumMethods(); i++ {
		if !it.Method(i).Exported() {
			return ", has unexported methods"
		}
	}
	return ""
}

// fields lists the exported fields declared in s, then the exported fields
// promoted into it from embedded structs (resolved as a selector would be).
// As with methods, a field promoted through an unexported embedded field
// counts as T's own, and one promoted through an exported embedded field is
// marked with its path.
func (e *enumerator) fields(name string, named *types.Named, s *types.Struct) {
	for i := 0; i < s.NumFields(); i++ {
		f := s.Field(i)
		if !f.Exported() {
			continue
		}
		e.s.Counts.Fields[name]++
		suffix := ""
		if f.Embedded() {
			suffix = " (embedded)"
		}
		e.add("field %s.%s %s%s", name, f.Name(), e.w.typ(f.Type()), suffix)
	}
	for _, fname := range promotedFieldCandidates(s) {
		obj, index, _ := types.LookupFieldOrMethod(named, true, named.Obj().Pkg(), fname)
		f, ok := obj.(*types.Var)
		if !ok || len(index) < 2 {
			continue // a method, ambiguous, or declared in s itself
		}
		if path, visible := visibleEmbedPath(named, index); visible {
			e.s.Counts.PromotedFields++
			e.add("field %s.%s %s (promoted via %s)", name, fname, e.w.typ(f.Type()), path)
		} else {
			e.s.Counts.Fields[name]++
			e.add("field %s.%s %s", name, fname, e.w.typ(f.Type()))
		}
	}
}

// promotedFieldCandidates collects the exported field names of all structs
// embedded (at any depth) in s, sorted and without duplicates.
func promotedFieldCandidates(s *types.Struct) []string {
	seen := map[string]bool{}
	visited := map[types.Type]bool{}
	var walk func(s *types.Struct, depth int)
	walk = func(s *types.Struct, depth int) {
		for i := 0; i < s.NumFields(); i++ {
			f := s.Field(i)
			if depth > 0 && f.Exported() {
				seen[f.Name()] = true
			}
			if !f.Embedded() {
				continue
			}
			t := deref(unalias(f.Type()))
			if visited[t] {
				continue
			}
			visited[t] = true
			if inner, ok := t.Underlying().(*types.Struct); ok {
				walk(inner, depth+1)
			}
		}
	}
	walk(s, 0)
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func deref(t types.Type) types.Type {
	if p, ok := t.(*types.Pointer); ok {
		return p.Elem()
	}
	return t
}

// embedPath names the embedded fields that index walks through (all of
// index but its last element, which selects the field or method itself).
func embedPath(t types.Type, index []int) string {
	var names []string
	for _, i := range index[:len(index)-1] {
		s, ok := deref(unalias(t)).Underlying().(*types.Struct)
		if !ok {
			break
		}
		f := s.Field(i)
		names = append(names, f.Name())
		t = f.Type()
	}
	return strings.Join(names, ".")
}

// methods lists the exported methods of *T, declared or promoted, marking
// each with the receiver form that has it: (T) when T's own method set
// includes it, (*T) otherwise.
//
// A method promoted through an unexported embedded field is listed as T's
// own: where it is declared is an implementation detail (the reference
// promotes all 40 methods of TCPConnection from an unexported struct). One
// promoted through an exported embedded field is part of that field's API
// and carries " (promoted via F)"; it is not counted as T's.
func (e *enumerator) methods(name string, named *types.Named) {
	ptrSet := types.NewMethodSet(types.NewPointer(named))
	valSet := types.NewMethodSet(named)
	var lines []string
	for i := 0; i < ptrSet.Len(); i++ {
		sel := ptrSet.At(i)
		m := sel.Obj()
		if !m.Exported() {
			continue
		}
		recv := "*" + name
		if valSet.Lookup(m.Pkg(), m.Name()) != nil {
			recv = name
		}
		var b strings.Builder
		e.w.writeSignature(&b, sel.Type().(*types.Signature))
		suffix := ""
		if path, visible := visibleEmbedPath(named, sel.Index()); visible {
			e.s.Counts.PromotedMethods++
			suffix = " (promoted via " + path + ")"
		} else {
			e.s.Counts.Methods[name]++
		}
		lines = append(lines, fmt.Sprintf("method (%s) %s%s%s", recv, m.Name(), b.String(), suffix))
	}
	sort.Strings(lines)
	e.s.Lines = append(e.s.Lines, lines...)
}

// visibleEmbedPath reports whether the selection index reaches its field or
// method through an exported embedded field of t, and names the path.
func visibleEmbedPath(t types.Type, index []int) (string, bool) {
	if len(index) < 2 {
		return "", false
	}
	s, ok := deref(unalias(t)).Underlying().(*types.Struct)
	if !ok || !s.Field(index[0]).Exported() {
		return "", false
	}
	return embedPath(t, index), true
}

// interfaceMethods lists the types embedded in it, then its exported methods
// (the complete method set). Which methods come from an embedded interface
// shows in the embed lines only, so that a different embedding and a
// different method set show as different lines.
func (e *enumerator) interfaceMethods(name string, it *types.Interface) {
	var embeds []string
	for i := 0; i < it.NumEmbeddeds(); i++ {
		embeds = append(embeds, fmt.Sprintf("embed %s %s", name, e.w.typ(it.EmbeddedType(i))))
	}
	sort.Strings(embeds)
	e.s.Lines = append(e.s.Lines, embeds...)
	explicit := map[string]bool{}
	for i := 0; i < it.NumExplicitMethods(); i++ {
		explicit[it.ExplicitMethod(i).Name()] = true
	}
	for i := 0; i < it.NumMethods(); i++ { // sorted by name
		m := it.Method(i)
		if !m.Exported() {
			continue
		}
		var b strings.Builder
		e.w.writeSignature(&b, m.Type().(*types.Signature))
		if explicit[m.Name()] {
			e.s.Counts.InterfaceMethods[name]++
		} else {
			e.s.Counts.EmbeddedInterfaceMethods++
		}
		e.add("imethod %s.%s%s", name, m.Name(), b.String())
	}
}
