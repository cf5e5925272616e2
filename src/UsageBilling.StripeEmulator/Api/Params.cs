using System.Globalization;

namespace UsageBilling.StripeEmulator.Api;

/// <summary>Typed, validating access to a (possibly nested) set of Stripe form parameters.</summary>
internal sealed class Params
{
    private static readonly FormNode Empty = new() { Children = new OrderedDictionary<string, FormNode>() };
    private readonly string _prefix;

    public Params(FormNode? node, string prefix = "")
    {
        Node = node ?? Empty;
        _prefix = prefix;
    }

    public FormNode Node { get; }

    public IEnumerable<string> Keys => Node.Children?.Keys ?? Enumerable.Empty<string>();

    public string Name(string key) => _prefix.Length == 0 ? key : $"{_prefix}[{key}]";

    /// <summary>Rejects any parameter not in <paramref name="allowed"/> (and <c>expand</c>) with Stripe's <c>parameter_unknown</c>.</summary>
    public Params AllowOnly(params string[] allowed)
    {
        foreach (var key in Keys)
        {
            if (key != "expand" || _prefix.Length != 0)
            {
                if (Array.IndexOf(allowed, key) < 0)
                {
                    throw StripeApiException.Unknown(Name(key));
                }
            }
        }

        return this;
    }

    public bool Has(string key) => Node.Child(key) is not null;

    public string? Str(string key, int maxLength = 5000)
    {
        var n = Node.Child(key);
        if (n is null)
        {
            return null;
        }

        if (n.IsObject)
        {
            throw StripeApiException.Invalid($"Invalid string: {FormParser.Describe(n)}", Name(key), "parameter_invalid_string");
        }

        var v = n.Value ?? string.Empty;
        if (v.Length > maxLength)
        {
            throw StripeApiException.Invalid($"Invalid {Name(key)}: must be at most {maxLength} characters", Name(key), "string_length_exceeded");
        }

        return v;
    }

    public string Required(string key, int maxLength = 5000)
    {
        var v = Str(key, maxLength);
        if (string.IsNullOrEmpty(v))
        {
            throw StripeApiException.Missing(Name(key));
        }

        return v;
    }

    public string? Enum(string key, params string[] allowed)
    {
        var v = Str(key);
        if (v is null || v.Length == 0)
        {
            return v is null ? null : string.Empty;
        }

        if (Array.IndexOf(allowed, v) < 0)
        {
            throw StripeApiException.Invalid(
                $"Invalid {Name(key)}: must be one of {string.Join(", ", allowed)}",
                Name(key),
                "parameter_invalid_string");
        }

        return v;
    }

    public long? Long(string key)
    {
        var v = Str(key);
        if (string.IsNullOrEmpty(v))
        {
            return null;
        }

        if (!long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l))
        {
            throw StripeApiException.Invalid($"Invalid integer: {v}", Name(key), "parameter_invalid_integer");
        }

        return l;
    }

    public decimal? Decimal(string key)
    {
        var v = Str(key);
        if (string.IsNullOrEmpty(v))
        {
            return null;
        }

        if (!decimal.TryParse(v, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var d))
        {
            throw StripeApiException.Invalid($"Invalid decimal: {v}", Name(key), "parameter_invalid_decimal");
        }

        return d;
    }

    public bool? Bool(string key)
    {
        var v = Str(key);
        return v switch
        {
            null or "" => null,
            "true" => true,
            "false" => false,
            _ => throw StripeApiException.Invalid($"Invalid boolean: {v}", Name(key), "parameter_invalid_boolean"),
        };
    }

    public Params? Obj(string key)
    {
        var n = Node.Child(key);
        if (n is null || (!n.IsObject && string.IsNullOrEmpty(n.Value)))
        {
            return null;
        }

        if (!n.IsObject)
        {
            throw StripeApiException.Invalid($"Invalid object", Name(key), "parameter_invalid_object");
        }

        return new Params(n, Name(key));
    }

    public List<Params>? ObjArray(string key)
    {
        var o = Obj(key);
        if (o is null)
        {
            return null;
        }

        var list = new List<Params>();
        foreach (var k in o.Keys.OrderBy(IndexOf))
        {
            var child = o.Node.Child(k)!;
            if (!child.IsObject)
            {
                throw StripeApiException.Invalid("Invalid array", o.Name(k), "parameter_invalid_object");
            }

            list.Add(new Params(child, o.Name(k)));
        }

        return list;
    }

    public List<string>? StrArray(string key)
    {
        var n = Node.Child(key);
        if (n is null)
        {
            return null;
        }

        if (!n.IsObject)
        {
            if (string.IsNullOrEmpty(n.Value))
            {
                return [];
            }

            throw StripeApiException.Invalid("Invalid array", Name(key), "parameter_invalid_array");
        }

        var o = new Params(n, Name(key));
        var list = new List<string>();
        foreach (var k in o.Keys.OrderBy(IndexOf))
        {
            list.Add(o.Str(k) ?? string.Empty);
        }

        return list;
    }

    /// <summary>A flat string map such as <c>metadata</c> or <c>payload</c>.</summary>
    public Dictionary<string, string>? Map(string key)
    {
        var o = Obj(key);
        if (o is null)
        {
            return Node.Child(key) is null ? null : [];
        }

        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var k in o.Keys)
        {
            map[k] = o.Str(k) ?? string.Empty;
        }

        return map;
    }

    private int IndexOf(string key) =>
        int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out var i)
            ? i
            : throw StripeApiException.Invalid("Invalid array index", Name(key), "parameter_invalid_array");
}
