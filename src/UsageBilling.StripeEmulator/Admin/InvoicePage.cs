using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;
using UsageBilling.StripeEmulator.State;

namespace UsageBilling.StripeEmulator.Admin;

/// <summary>The emulator's stand-in for Stripe's hosted invoice page (an invoice's <c>hosted_invoice_url</c>): number, status, lines and total.</summary>
internal static class InvoicePage
{
    public static IResult Render(InvoicePageModel? model, string id)
    {
        if (model is null)
        {
            return Page(StatusCodes.Status404NotFound, $"<h1>Stripe emulator invoice</h1><p data-testid=\"error\">No such finalized invoice: '{E(id)}'</p>");
        }

        var html = new StringBuilder();
        html.Append(CultureInfo.InvariantCulture, $"<h1>Invoice <span data-testid=\"number\">{E(model.Number)}</span></h1>");
        html.Append(CultureInfo.InvariantCulture, $"<p>Status <strong data-testid=\"status\">{E(model.Status)}</strong> · period {Date(model.PeriodStart)} – {Date(model.PeriodEnd)}</p>");
        html.Append("<table><thead><tr><th>Description</th><th>Period</th><th>Quantity</th><th>Amount</th></tr></thead><tbody>");
        foreach (var line in model.Lines)
        {
            html.Append(CultureInfo.InvariantCulture,
                $"<tr data-testid=\"line\"><td>{E(line.Description)}</td><td>{Date(line.PeriodStart)} – {Date(line.PeriodEnd)}</td><td>{line.Quantity}</td><td>{E(Money(line.Amount, model.Currency))}</td></tr>");
        }

        html.Append(CultureInfo.InvariantCulture, $"</tbody></table><p>Total: <strong data-testid=\"total\">{E(Money(model.Total, model.Currency))}</strong></p>");
        return Page(StatusCodes.Status200OK, html.ToString());
    }

    private static IResult Page(int status, string body) => Results.Content(
        $"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Invoice · Stripe emulator</title></head><body>{body}</body></html>",
        "text/html; charset=utf-8",
        Encoding.UTF8,
        status);

    private static string Date(long unix) => DateTimeOffset.FromUnixTimeSeconds(unix).ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture);

    private static string Money(long minor, string currency) =>
        string.Create(CultureInfo.InvariantCulture, $"{minor / 100m:0.00} {currency.ToUpperInvariant()}");

    private static string E(string s) => WebUtility.HtmlEncode(s);
}
