using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;
using UsageBilling.StripeEmulator.State;

namespace UsageBilling.StripeEmulator.Admin;

/// <summary>The emulator's stand-in for Stripe's hosted Checkout page: the order, a "Pay" button and a link back to <c>cancel_url</c>.</summary>
internal static class CheckoutPage
{
    public static IResult Render(CheckoutPageModel? model, string id)
    {
        if (model is null)
        {
            return Error(StatusCodes.Status404NotFound, $"No such checkout.session: '{id}'");
        }

        var html = new StringBuilder();
        html.Append("<h1>Stripe emulator checkout</h1>");
        html.Append(CultureInfo.InvariantCulture, $"<p>Session <code data-testid=\"session-id\">{E(model.Id)}</code> · status <strong data-testid=\"status\">{E(model.Status)}</strong></p>");
        if (model.CustomerEmail is { } email)
        {
            html.Append(CultureInfo.InvariantCulture, $"<p>Customer: {E(email)}</p>");
        }

        html.Append("<table><thead><tr><th>Item</th><th>Quantity</th><th>Due today</th></tr></thead><tbody>");
        foreach (var line in model.Lines)
        {
            var quantity = line.Quantity?.ToString(CultureInfo.InvariantCulture) ?? "—";
            var amount = line.Metered ? "billed by usage" : Money(line.Amount, model.Currency);
            html.Append(CultureInfo.InvariantCulture, $"<tr data-testid=\"line\"><td>{E(line.Description)}</td><td>{E(quantity)}</td><td>{E(amount)}</td></tr>");
        }

        html.Append(CultureInfo.InvariantCulture, $"</tbody></table><p>Total due today: <strong data-testid=\"total\">{E(Money(model.AmountTotal, model.Currency))}</strong></p>");
        if (model.Status == "open")
        {
            var expires = DateTimeOffset.FromUnixTimeSeconds(model.ExpiresAt).ToString("u", CultureInfo.InvariantCulture);
            html.Append(CultureInfo.InvariantCulture, $"<form method=\"post\" action=\"{E(CheckoutStore.CheckoutPagePath(model.Id))}\"><button type=\"submit\" data-testid=\"pay\">Pay</button></form>");
            if (model.CancelUrl is { } cancel)
            {
                html.Append(CultureInfo.InvariantCulture, $"<p><a href=\"{E(cancel)}\" data-testid=\"cancel\">Cancel and go back</a></p>");
            }

            html.Append(CultureInfo.InvariantCulture, $"<p><small>This session expires at {E(expires)}.</small></p>");
        }
        else
        {
            html.Append(CultureInfo.InvariantCulture, $"<p data-testid=\"closed\">This checkout session is {E(model.Status)} and can no longer be paid.</p>");
        }

        return Page(StatusCodes.Status200OK, html.ToString());
    }

    public static IResult Error(int status, string message) =>
        Page(status, $"<h1>Stripe emulator checkout</h1><p data-testid=\"error\">{E(message)}</p>");

    private static IResult Page(int status, string body) => Results.Content(
        $"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Checkout · Stripe emulator</title></head><body>{body}</body></html>",
        "text/html; charset=utf-8",
        Encoding.UTF8,
        status);

    private static string Money(long minor, string currency) =>
        string.Create(CultureInfo.InvariantCulture, $"{minor / 100m:0.00} {currency.ToUpperInvariant()}");

    private static string E(string s) => WebUtility.HtmlEncode(s);
}
