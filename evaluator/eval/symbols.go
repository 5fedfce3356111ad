package eval

// Sym is an interned attribute or variable name. Attribute sets are sorted
// by Sym, so lookups compare integers; the order is not lexicographic, and
// whatever needs names in order (printing, attrNames) sorts them.
type Sym uint32

type symtab struct {
	names []string
	ids   map[string]Sym
}

func newSymtab() *symtab {
	t := &symtab{ids: make(map[string]Sym, 1024)}
	for _, s := range predefinedSyms {
		t.intern(s)
	}
	return t
}

func (t *symtab) intern(s string) Sym {
	if id, ok := t.ids[s]; ok {
		return id
	}
	id := Sym(len(t.names))
	t.names = append(t.names, s)
	t.ids[s] = id
	return id
}

func (t *symtab) name(s Sym) string { return t.names[s] }

// Symbols the evaluator itself uses, interned first so they are constants.
const (
	symOutPath Sym = iota
	symType
	symFunctor
	symToString
	symValue
	symSuccess
	symName
	symFile
	symLine
	symColumn
	symBody
	symOverrides
	symDrvPath
	symOutputs
	symPrefix
	symPath
	symKey
	symOperator
	symStartSet
	symRight
	symWrong
	symIgnoreNulls
	symData
	symOutputName
	symAllOutputs
	symDrvAttrs
	symVersion
	symFilter
	symRecursive
	symSha256
	symURL
	symRev
	symRef
	numPredefined
)

var predefinedSyms = [...]string{
	symOutPath: "outPath", symType: "type", symFunctor: "__functor",
	symToString: "__toString", symValue: "value", symSuccess: "success",
	symName: "name", symFile: "file", symLine: "line", symColumn: "column",
	symBody: "body", symOverrides: "__overrides", symDrvPath: "drvPath",
	symOutputs: "outputs", symPrefix: "prefix", symPath: "path", symKey: "key",
	symOperator: "operator", symStartSet: "startSet", symRight: "right",
	symWrong: "wrong", symIgnoreNulls: "__ignoreNulls", symData: "data",
	symOutputName: "outputName", symAllOutputs: "allOutputs",
	symDrvAttrs: "drvAttrs", symVersion: "version", symFilter: "filter",
	symRecursive: "recursive", symSha256: "sha256", symURL: "url", symRev: "rev",
	symRef: "ref",
}
