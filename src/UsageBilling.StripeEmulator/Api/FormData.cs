using System.Globalization;
using System.Text;

namespace UsageBilling.StripeEmulator.Api;

/// <summary>One node of a Stripe form body: a scalar value or a map of children (<c>a[b][0]=x</c>).</summary>
internal sealed class FormNode
{
    public string? Value { get; set; }

    public OrderedDictionary<string, FormNode>? Children { get; set; }

    public bool IsObject => Children is not null;

    public FormNode? Child(string key) => Children is not null && Children.TryGetValue(key, out var n) ? n : null;
}

/// <summary>Parses <c>application/x-www-form-urlencoded</c> bodies and query strings the way Stripe reads them.</summary>
internal static class FormParser
{
    public static FormNode Parse(string? text, FormNode? into = null)
    {
        var root = into ?? new FormNode { Children = new OrderedDictionary<string, FormNode>(StringComparer.Ordinal) };
        if (string.IsNullOrEmpty(text))
        {
            return root;
        }

        foreach (var part in text.Split('&'))
        {
            if (part.Length == 0)
            {
                continue;
            }

            var eq = part.IndexOf('=', StringComparison.Ordinal);
            var rawKey = eq < 0 ? part : part[..eq];
            var rawValue = eq < 0 ? string.Empty : part[(eq + 1)..];
            var key = Decode(rawKey);
            var value = Decode(rawValue);
            Insert(root, key, value);
        }

        return root;
    }

    private static string Decode(string s)
    {
        if (s.Contains('%', StringComparison.Ordinal))
        {
            // Reject malformed escapes instead of letting them through half-decoded.
            for (var i = 0; i < s.Length; i++)
            {
                if (s[i] == '%' && (i + 2 >= s.Length || !Uri.IsHexDigit(s[i + 1]) || !Uri.IsHexDigit(s[i + 2])))
                {
                    throw StripeApiException.Invalid("Invalid request body: malformed percent-encoding.");
                }
            }
        }

        return Uri.UnescapeDataString(s.Replace('+', ' '));
    }

    private static void Insert(FormNode root, string key, string value)
    {
        var segments = SplitKey(key);
        var node = root;
        for (var i = 0; i < segments.Count; i++)
        {
            var seg = segments[i];
            if (node.Value is not null)
            {
                throw StripeApiException.Invalid($"Invalid request body: '{key}' mixes a value and an object.", segments[0]);
            }

            node.Children ??= new OrderedDictionary<string, FormNode>(StringComparer.Ordinal);
            if (seg.Length == 0)
            {
                // "a[]" appends.
                seg = node.Children.Count.ToString(CultureInfo.InvariantCulture);
            }

            var last = i == segments.Count - 1;
            if (!node.Children.TryGetValue(seg, out var child))
            {
                child = new FormNode();
                node.Children[seg] = child;
            }

            if (last)
            {
                if (child.Children is not null)
                {
                    throw StripeApiException.Invalid($"Invalid request body: '{key}' mixes a value and an object.", segments[0]);
                }

                child.Value = value;
            }

            node = child;
        }
    }

    private static List<string> SplitKey(string key)
    {
        var result = new List<string>(4);
        var open = key.IndexOf('[', StringComparison.Ordinal);
        var name = open < 0 ? key : key[..open];
        if (name.Length == 0 || key.Contains(']', StringComparison.Ordinal) && open < 0)
        {
            throw StripeApiException.Invalid($"Invalid request body: malformed parameter name '{key}'.");
        }

        result.Add(name);
        var pos = open;
        while (pos >= 0 && pos < key.Length)
        {
            if (key[pos] != '[')
            {
                throw StripeApiException.Invalid($"Invalid request body: malformed parameter name '{key}'.");
            }

            var close = key.IndexOf(']', pos);
            if (close < 0)
            {
                throw StripeApiException.Invalid($"Invalid request body: malformed parameter name '{key}'.");
            }

            var seg = key[(pos + 1)..close];
            if (seg.Contains('[', StringComparison.Ordinal))
            {
                throw StripeApiException.Invalid($"Invalid request body: malformed parameter name '{key}'.");
            }

            result.Add(seg);
            pos = close + 1;
        }

        return result;
    }

    /// <summary>Renders a node for error messages, as Stripe echoes invalid values.</summary>
    public static string Describe(FormNode node)
    {
        if (node.Children is null)
        {
            return node.Value ?? string.Empty;
        }

        var sb = new StringBuilder("{");
        var first = true;
        foreach (var (k, v) in node.Children)
        {
            if (!first)
            {
                sb.Append(", ");
            }

            first = false;
            sb.Append(k).Append('=').Append(Describe(v));
        }

        return sb.Append('}').ToString();
    }
}
